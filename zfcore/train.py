"""Training as the paper trained (section 3), scaled to a profile; checkpoints for Fig. 4.

The recipe of section 3 is a profile setting: SGD with momentum 0.9 and weight decay, batch 128,
learning rate 1e-2 annealed by hand when the validation error plateaus, dropout 0.5 in layers 6
and 7, weights initialised to 1e-2 and biases to 0 (:func:`zfcore.models.paper_init_`),
feature-scale clipping of every convolutional filter to RMS 0.1 after every step
(:func:`zfcore.models.clip_filters_`, off with ``clip_rms=None``), and the paper's crops (the
centre and four corners, 224 of 256) and their mirror images, scaled to the input side
(:func:`zfcore.data.paper_crops`). The small profiles use Adam and PyTorch's default initialisation (``profile.optimizer``,
``profile.init``; see CONTRIBUTING.md, "Profiles"), and the paper's recipe stays one override away::

    model = trained_model("mini")                                  # cached after the first call
    paper = trained_model("mini", optimizer="sgd", lr=1e-2, init="paper")
    slow1 = trained_model("mini", layer_lr={"layer1": 0.1})        # per-layer LR multipliers

Properties the tests check: deterministic under ``profile.seed`` on CPU; resumable bit-for-bit
(training is a function of (configuration, epoch), so stopping after any epoch and resuming
gives the same weights and metrics); DistributedDataParallel through ``torchrun`` with the same
entry point reaches the weights of one process with the same global batch; a checkpoint write
killed half-way leaves the previous checkpoint in use.

Cache layout: ``<cache_dir>/train/<hash>/`` where the hash covers everything that changes the
weights (the profile's identity except its length, the architecture, the variant, the trainer
options, :data:`TRAINER_VERSION` and the data generator's version). A run of E epochs is the
first E epochs of any longer run of the same configuration, so a shorter schedule is served
from a longer run's checkpoint and a longer one resumes a shorter one.

Command line (one process, or one per GPU through torchrun; ``--set`` overrides any profile field
or trainer option)::

    python -m zfcore.train --profile mini
    python -m zfcore.train --profile mini --set optimizer=sgd --set lr=0.01 --set init=paper
    torchrun --standalone --nproc_per_node=8 -m zfcore.train --profile imagenet
    torchrun --nnodes=4 --nproc_per_node=8 --rdzv_id=zf --rdzv_backend=c10d \
             --rdzv_endpoint=HEAD_NODE:29500 -m zfcore.train --profile imagenet

``--profile``'s ``batch_size`` is the global batch (the paper's 128), split evenly over the
processes. Only rank 0 writes the cache entry; on several nodes point ``ZFCORE_CACHE`` at a shared
file system (or collect the entry from rank 0's node).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from . import cache as zcache
from .health import FireCounter
from .models import (TABLE3_VARIANTS, build, clip_filters_, conv_layers, filter_rms, he_init_, LayerError, layer_key, layer_names,
                     load_model_state, paper_init_)
from .profiles import Profile, ProfileError, get_profile
from .errors import ZFCoreError

__all__ = [
    "TRAINER_VERSION", "EARLY_CHECKPOINTS", "TrainOptions", "TrainSpec", "make_spec", "TrainRun", "TrainError",
    "EpochMetrics", "train", "training_run", "trained_model", "comparison_overrides", "compare_throughput", "build_model", "evaluate",
    "layer_parameters", "parameter_groups", "RenderedScenes", "rendered_split", "epoch_order", "CheckpointStore", "split_overrides",
    "main",
]

#: Bumped whenever a change to this module changes the weights a configuration trains to.
TRAINER_VERSION = 4  # 4: warm-up, bias_init, He init, AdamW; dead maps and eval-mode train error in the history

#: Fractional checkpoints saved in the first epoch on top of ``profile.checkpoint_epochs``:
#: lower layers settle within the first epoch on the small profiles (Fig. 4's point).
EARLY_CHECKPOINTS: tuple[float, ...] = (0.125, 0.25, 0.5)

ARCHS = ("zfnet", "krizhevsky")
LAYER_KEYS = ("layer1", "layer2", "layer3", "layer4", "layer5", "layer6", "layer7", "logits")


class TrainError(ZFCoreError, ValueError):
    """A bad training argument (unknown override, layer, architecture, variant or schedule)."""


# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------

def _layer_map(value: "Mapping | Sequence | None", what: str) -> tuple[tuple[str, float], ...]:
    if value is None:
        return ()
    items = value.items() if isinstance(value, Mapping) else value
    try:
        out = {layer_key(k, LAYER_KEYS): float(v) for k, v in items}
    except (TypeError, ValueError) as e:
        if isinstance(e, (TrainError, LayerError)):
            raise
        raise TrainError(f"{what} must map layers to numbers, e.g. {{'layer1': 0.1}}; got {value!r}") from None
    for k, v in out.items():
        if not math.isfinite(v) or v < 0:
            raise TrainError(f"{what}[{k!r}] = {v} must be a finite number >= 0")
    return tuple(sorted(out.items()))


@dataclass(frozen=True)
class TrainOptions:
    """Trainer settings that are not profile fields (all part of the cache key).

    * ``layer_lr``: learning-rate multiplier per layer, e.g. ``{"layer1": 0.1}`` (others 1).
    * ``freeze_after``: ``{"layer1": 2}`` stops updating layer 1 after epoch 2 (fractions such
      as ``0.5`` freeze mid-epoch; its gradient is no longer computed, so the freeze also saves
      time).
    * ``plateau_patience`` / ``plateau_factor``: the paper anneals the learning rate by hand when
      the validation error plateaus; here it is multiplied by ``plateau_factor`` after
      ``plateau_patience`` epochs without a new best validation error (``0`` turns it off).
    * ``augment``: the paper's crops and flips (section 3.1; ``zfcore.data.paper_crops``).
    """

    layer_lr: tuple[tuple[str, float], ...] = ()
    freeze_after: tuple[tuple[str, float], ...] = ()
    plateau_patience: int = 2
    plateau_factor: float = 0.1
    augment: bool = True

    def __post_init__(self):
        object.__setattr__(self, "layer_lr", _layer_map(self.layer_lr, "layer_lr"))
        object.__setattr__(self, "freeze_after", _layer_map(self.freeze_after, "freeze_after"))
        if not isinstance(self.plateau_patience, int) or self.plateau_patience < 0:
            raise TrainError(f"plateau_patience must be an int >= 0, not {self.plateau_patience!r}")
        if not 0 < float(self.plateau_factor) <= 1:
            raise TrainError(f"plateau_factor must be in (0, 1], not {self.plateau_factor!r}")


_OPTION_FIELDS = {f.name for f in dataclasses.fields(TrainOptions)}


def split_overrides(overrides: Mapping[str, Any]) -> tuple[dict, dict]:
    """Split ``trained_model``'s keyword overrides into profile fields and trainer options."""
    profile_fields = {f.name for f in dataclasses.fields(Profile)}
    prof, opts, unknown = {}, {}, []
    for k, v in overrides.items():
        if k in profile_fields:
            prof[k] = v
        elif k in _OPTION_FIELDS:
            opts[k] = v
        else:
            unknown.append(k)
    if unknown:
        raise TrainError(f"unknown training override(s) {sorted(unknown)}: use profile fields "
                         f"(e.g. epochs, lr, optimizer, init, clip_rms, n_train) or trainer "
                         f"options {sorted(_OPTION_FIELDS)}")
    return prof, opts


@dataclass(frozen=True)
class TrainSpec:
    """One training configuration: a profile, an architecture, a Table 3 variant, options."""

    profile: Profile
    arch: str = "zfnet"
    variant: str = "zf"
    options: TrainOptions = TrainOptions()

    def __post_init__(self):
        if self.arch not in ARCHS:
            raise TrainError(f"unknown arch {self.arch!r}: choose one of {', '.join(ARCHS)}")
        if self.variant not in TABLE3_VARIANTS:
            raise TrainError(f"unknown variant {self.variant!r}: choose one of {sorted(TABLE3_VARIANTS)}")
        p = self.profile
        if p.optimizer not in ("sgd", "adam", "adamw"):
            raise TrainError(f"profile.optimizer must be 'sgd', 'adam' or 'adamw', not {p.optimizer!r}")
        if p.init not in ("paper", "default", "he"):
            raise TrainError(f"profile.init must be 'paper', 'default' or 'he', not {p.init!r}")
        if not isinstance(p.epochs, int) or p.epochs < 1:
            raise TrainError(f"epochs must be a positive int, not {p.epochs!r}")
        if p.batch_size < 1 or p.n_train < p.batch_size:
            raise TrainError(f"n_train ({p.n_train}) must hold at least one batch of {p.batch_size}")

    def key_config(self) -> dict:
        """What the weights depend on. ``epochs`` and ``checkpoint_epochs`` are left out: a run
        of E epochs is the prefix of any longer run (nothing depends on the total length)."""
        ident = self.profile.identity()
        ident.pop("epochs")
        ident.pop("checkpoint_epochs")
        return {"trainer_version": TRAINER_VERSION, "generator_version": _generator_version(),
                "profile": ident, "arch": self.arch, "variant": self.variant,
                "options": dataclasses.asdict(self.options)}

    def entry(self) -> Path:
        return zcache.entry_dir(self.profile.cache_dir, "train", self.key_config())

    def checkpoint_epochs(self) -> tuple[float, ...]:
        """Epochs (fractional allowed) whose weights are kept: the profile's, the early ones
        and the last one, all within this run's length."""
        e = self.profile.epochs
        wanted = set(self.profile.checkpoint_epochs) | set(EARLY_CHECKPOINTS) | {e}
        return tuple(sorted(float(x) for x in wanted if 0 < x <= e))


def _generator_version() -> Any:
    try:
        from . import data
    except ImportError:
        return None
    return getattr(data, "GENERATOR_VERSION", None)


def make_spec(profile: "str | Profile" = "mini", arch: str = "zfnet", variant: str = "zf",
              **overrides) -> TrainSpec:
    """A :class:`TrainSpec` from a profile name and ``trained_model``-style overrides."""
    prof_over, opt_over = split_overrides(overrides)
    try:
        p = get_profile(profile, **prof_over)
    except ProfileError as e:
        raise TrainError(str(e)) from None
    return TrainSpec(p, arch, variant, TrainOptions(**opt_over))


# ---------------------------------------------------------------------------------------------
# Model, parameter groups, optimiser
# ---------------------------------------------------------------------------------------------

def build_model(spec: TrainSpec) -> nn.Module:
    """The untrained network of ``spec``, initialised deterministically from ``profile.seed``."""
    p = spec.profile
    torch.manual_seed(p.seed)
    model = build(spec.variant, first_layer="zf" if spec.arch == "zfnet" else "krizhevsky",
                  width=p.width, image_size=p.image_size, num_classes=p.num_classes,
                  fc_units=p.fc_units, dropout=p.dropout)
    if p.init == "paper":
        paper_init_(model)
    elif p.init == "he":  # He normal for the hidden layers; the logits start small (std 1e-2, the
        he_init_(model, seed=p.seed)   # paper's), so the first steps do not just shrink large random logits
        with torch.no_grad():
            logits = model.get_submodule(layer_names(model)["logits"])
            logits.weight.normal_(0.0, 1e-2)
    if p.bias_init is not None:  # Krizhevsky et al. set hidden biases to 1 so ReLUs start alive
        with torch.no_grad():
            params = layer_parameters(model)
            for layer, group in params.items():
                if layer.startswith("layer") and layer != "layer1":
                    for q in group:
                        if q.dim() == 1:
                            q.fill_(p.bias_init)
    if p.layer1_init_std is not None:  # layer 1 from near zero, biases 0 (section 3's biases)
        first = conv_layers(model)[0]
        with torch.no_grad():
            first.weight.normal_(0.0, p.layer1_init_std)
            first.bias.zero_()
    return model


def layer_parameters(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    """The weights of each addressable layer: ``{"layer1": [conv1.weight, conv1.bias], ...}``.

    A layer's output is the ReLU named in ``model.layer_names``; its parameters are those of the
    last module with parameters before that ReLU (the convolution or fully connected layer).
    Parameters that belong to no named layer are returned under ``"other"``.
    """
    names = layer_names(model)
    order = [n for n, _ in model.named_modules()]
    owners = [n for n, m in model.named_modules() if next(m.parameters(recurse=False), None) is not None]
    out: dict[str, list[nn.Parameter]] = {}
    taken: set[int] = set()
    for layer, qual in names.items():
        pos = order.index(qual)
        before = [n for n in owners if order.index(n) <= pos]
        if not before:
            continue
        params = list(model.get_submodule(before[-1]).parameters(recurse=False))
        out[layer] = params
        taken.update(id(q) for q in params)
    rest = [q for q in model.parameters() if id(q) not in taken]
    if rest:
        out["other"] = rest
    return out


def parameter_groups(model: nn.Module, lr: float, layer_lr: Mapping[str, float] = ()) -> list[dict]:
    """One optimiser group per layer with ``lr * layer_lr.get(layer, 1)`` (per-layer rates)."""
    mult = dict(layer_lr)
    groups = layer_parameters(model)
    missing = sorted(set(mult) - set(groups))
    if missing:
        raise TrainError(f"layer_lr names {missing}, which this model does not have "
                         f"(it has {sorted(k for k in groups if k != 'other')})")
    return [{"params": params, "lr": lr * mult.get(layer, 1.0), "layer": layer,
             "lr_multiplier": mult.get(layer, 1.0)} for layer, params in groups.items()]


def _optimizer(spec: TrainSpec, model: nn.Module) -> torch.optim.Optimizer:
    p = spec.profile
    groups = parameter_groups(model, p.lr, dict(spec.options.layer_lr))
    if p.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=p.lr, momentum=p.momentum, weight_decay=p.weight_decay)
    if p.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=p.lr, weight_decay=p.weight_decay)
    return torch.optim.Adam(groups, lr=p.lr, weight_decay=p.weight_decay)


def _set_lr(opt: torch.optim.Optimizer, spec: TrainSpec, scale: float, step: int, steps: int) -> None:
    """Every group's rate: profile lr x its layer multiplier x plateau annealing x warm-up
    (linear from 0 over ``warmup_epochs``; a prefix of any longer run, like the rest)."""
    warm = spec.profile.warmup_epochs * steps
    ramp = min(1.0, (step + 1) / warm) if warm > 0 else 1.0
    ramp *= 0.1 ** sum(step >= e * steps for e in spec.profile.lr_drop_epochs)
    for g in opt.param_groups:
        g["lr"] = spec.profile.lr * g["lr_multiplier"] * scale * ramp


def _frozen_layers(spec: TrainSpec, progress: float) -> set[str]:
    """Layers whose ``freeze_after`` point (in epochs, fractions allowed) has been reached after
    ``progress`` epochs of training."""
    return {k for k, e in spec.options.freeze_after if progress >= e - 1e-9}


def _apply_freeze(model: nn.Module, frozen: set[str]) -> None:
    for layer, params in layer_parameters(model).items():
        for q in params:
            q.requires_grad_(layer not in frozen)


# ---------------------------------------------------------------------------------------------
# Data: deterministic, shard-invariant batches with the paper's crops and flips
# ---------------------------------------------------------------------------------------------

def _seed(*parts: Any) -> int:
    return int(zcache.config_hash(list(parts), length=15), 16)


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffled order of the training set in ``epoch`` (a function of seed and epoch)."""
    g = torch.Generator().manual_seed(_seed("order", seed, epoch))
    return torch.randperm(n, generator=g)


#: Largest procedural split kept in memory by :class:`RenderedScenes` (bytes at 8 bits/channel).
MEMO_BYTES = 1_500_000_000


class RenderedScenes:
    """A procedural split rendered once and kept in memory as 8-bit images (like photos).

    Rendering a scene costs about as much as a training step of ZF-mini, so every epoch after
    the first would pay it again; here each scene is rendered the first time it is asked for.
    :meth:`batch` then applies the paper's crops and flips for ``epoch`` exactly as
    ``zfcore.data.get_dataset(profile, split, augment=True, epoch=epoch)`` does (the same
    ``crop_choices`` of (seed, epoch, index) and ``paper_crops``), on the stored images.
    """

    def __init__(self, dataset):
        self.dataset = dataset
        n, s = len(dataset), dataset.size
        self.images = torch.empty((n, 3, s, s), dtype=torch.uint8)
        self.ready = torch.zeros(n, dtype=torch.bool)
        self.labels = dataset.labels()

    def __len__(self) -> int:
        return len(self.dataset)

    @staticmethod
    def fits(dataset) -> bool:
        """Procedural data sets small enough to keep (a rule on sizes only, never on free RAM,
        so the same configuration always trains on the same pixels)."""
        return (hasattr(dataset, "scenes") and hasattr(dataset, "labels") and hasattr(dataset, "size")
                and len(dataset) * 3 * dataset.size ** 2 <= MEMO_BYTES)

    def prefetch(self, progress: bool = False, batch_size: int = 500) -> "RenderedScenes":
        """Render every scene not rendered yet (so that training time excludes rendering)."""
        todo = (~self.ready).nonzero().flatten()
        chunks = [c for c in torch.split(todo, batch_size) if len(c)]
        if progress and chunks:
            from tqdm.auto import tqdm
            chunks = tqdm(chunks, desc=f"rendering {self.dataset.split} scenes", unit="batch")
        for c in chunks:
            self._render(c)
        return self

    def _render(self, todo: torch.Tensor) -> None:
        rendered = self.dataset.scenes(todo.tolist()).images
        self.images[todo] = (rendered * 255).round_().clamp_(0, 255).to(torch.uint8)
        self.ready[todo] = True

    def batch(self, indices: torch.Tensor, epoch: int, augment: bool) -> tuple[torch.Tensor, torch.Tensor]:
        from .data import normalize, paper_crops
        from .data.transforms import crop_choices
        indices = torch.as_tensor(indices, dtype=torch.long)
        todo = indices[~self.ready[indices]]
        if len(todo):
            self._render(todo)
        x = self.images[indices].float().div_(255)
        if augment:
            pos, flip = crop_choices(self.dataset.seed, epoch, indices.numpy())
            x = paper_crops(x, pos, flip)
        return normalize(x, self.dataset.profile), self.labels[indices]


def _as_source(data):
    """Wrap a procedural split in :class:`RenderedScenes`; other data sets are used as given."""
    if data is None or isinstance(data, RenderedScenes) or callable(data) and not hasattr(data, "__len__"):
        return data
    return RenderedScenes(data) if RenderedScenes.fits(data) else data


def _shards(n: int, spec: TrainSpec, epoch: int, rank: int, world: int, steps: int) -> list[list[int]]:
    """This process's share of every global batch of ``epoch`` (the last partial one dropped).

    Every global batch is the same whatever the number of processes; process ``rank`` takes the
    ``rank``-th contiguous slice, so DDP with ``world`` processes averages exactly the gradient
    one process computes on the whole batch.
    """
    b = spec.profile.batch_size
    order = epoch_order(n, spec.profile.seed, epoch)
    local = b // world
    return [order[s * b + rank * local: s * b + (rank + 1) * local].tolist() for s in range(steps)]


def _loader(dataset, batches: list[list[int]], num_workers: int):
    from torch.utils.data import DataLoader
    return DataLoader(dataset, batch_sampler=batches, num_workers=num_workers)


def _train_batches(source, spec: TrainSpec, epoch: int, rank: int, world: int,
                   steps: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The batches this process trains on in ``epoch``.

    ``source`` is a :class:`RenderedScenes`, a ``Dataset`` (used as given: it does its own
    augmentation, if any), or a function ``epoch -> Dataset`` (real data sets, whose crops and
    flips depend on the epoch); the latter two are read through a ``DataLoader`` with
    ``profile.num_workers`` workers.
    """
    if isinstance(source, RenderedScenes):
        for idx in _shards(len(source), spec, epoch, rank, world, steps):
            yield source.batch(idx, epoch, spec.options.augment)
        return
    dataset = source(epoch) if callable(source) and not hasattr(source, "__len__") else source
    yield from _loader(dataset, _shards(len(dataset), spec, epoch, rank, world, steps),
                       spec.profile.num_workers)


_MEMO: "dict[tuple, RenderedScenes]" = {}


def rendered_split(profile: Profile, split: str) -> "RenderedScenes | None":
    """The process-wide :class:`RenderedScenes` of a procedural split (shared by every training
    in this process that uses the same data, e.g. a notebook's Table 3 variants), or None."""
    from . import data
    ds = data.get_dataset(profile, split)
    if not RenderedScenes.fits(ds):
        return None
    key = (profile.dataset, profile.image_size, profile.data_seed, profile.num_classes,
           split, len(ds), _generator_version())
    if key not in _MEMO:
        if len(_MEMO) >= 2:                      # the train and val split of one data set
            _MEMO.pop(next(iter(_MEMO)))
        _MEMO[key] = RenderedScenes(ds)
    return _MEMO[key]


def _default_sources(spec: TrainSpec):
    """The profile's training split (augmented per epoch) and validation split."""
    try:
        from . import data
    except ImportError as e:
        raise TrainError(f"zfcore.data is not available ({e}); pass train_set= and val_set= "
                         f"(torch Datasets of (image, label)) to train()") from None
    p, aug = spec.profile, spec.options.augment
    train_source = rendered_split(p, "train")
    if train_source is None:
        def train_source(epoch, _p=p):
            return data.get_dataset(_p, "train", augment=aug, epoch=epoch)
        train_source.length = len(data.get_dataset(p, "train"))
    val_source = rendered_split(p, "val") or data.get_dataset(p, "val")
    return train_source, val_source


def _train_eval_source(train_set, spec: TrainSpec):
    """The training images as evaluated (no augmentation): what eval-mode training error reads."""
    if isinstance(train_set, RenderedScenes) or hasattr(train_set, "__getitem__"):
        return train_set
    from . import data
    return data.get_dataset(spec.profile, "train")


def _length(source) -> int:
    return source.length if hasattr(source, "length") and not hasattr(source, "__len__") else len(source)


# ---------------------------------------------------------------------------------------------
# Metrics and evaluation
# ---------------------------------------------------------------------------------------------

@dataclass
class EpochMetrics:
    """One epoch of training: running train loss/errors (with dropout and augmentation, as the
    paper reports training error) and validation loss/errors; errors in percent."""

    epoch: int
    lr: float
    train_loss: float
    train_top1_error: float
    train_top5_error: float
    val_loss: float
    val_top1_error: float
    val_top5_error: float
    train_seconds: float
    val_seconds: float
    images_per_s: float
    clipped_filters: int
    #: top-1/top-5 error (%) in eval mode, no augmentation, on a fixed subset of training images
    #: as large as the validation set (the gap to validation error measures over-fitting)
    train_eval_top1_error: float = float("nan")
    train_eval_top5_error: float = float("nan")
    #: per layer, the share of maps that fired on no validation image (``zfcore.health``)
    dead_share: dict = dataclasses.field(default_factory=dict)
    #: the largest RMS of any convolutional filter at the end of the epoch (clipping at 0.1)
    max_filter_rms: float = float("nan")

    @property
    def val_accuracy(self) -> float:
        return 100.0 - self.val_top1_error


def _counts(logits: torch.Tensor, y: torch.Tensor, loss: torch.Tensor) -> torch.Tensor:
    k = min(5, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    hit = top == y[:, None]
    return torch.stack([loss.detach() * len(y), hit[:, 0].sum(), hit.any(1).sum(),
                        torch.tensor(float(len(y)))]).double()


def _summarise(c: torch.Tensor) -> tuple[float, float, float]:
    n = max(float(c[3]), 1.0)
    return float(c[0]) / n, 100.0 * (1 - float(c[1]) / n), 100.0 * (1 - float(c[2]) / n)


@torch.no_grad()
def evaluate(model: nn.Module, dataset, batch_size: int = 256, device: "str | torch.device" = "cpu",
             rank: int = 0, world: int = 1, num_workers: int = 0, limit: int | None = None) -> dict[str, float]:
    """Loss and top-1/top-5 error (%) of ``model`` on ``dataset`` (its first ``limit`` images) in
    eval mode.

    ``dataset`` yields ``(normalised image, label)`` (or is a :class:`RenderedScenes`).

    With ``world`` processes each evaluates every ``world``-th image and the counts are summed.
    """
    was = model.training
    model.eval()
    c = torch.zeros(4, dtype=torch.float64, device=device)
    for x, y in _eval_stream(dataset, batch_size, rank, world, num_workers, limit):
        x, y = x.to(device, memory_format=torch.channels_last), y.to(device)
        out = model(x)
        c += _counts(out, y, F.cross_entropy(out, y))
    if world > 1:
        import torch.distributed as dist
        dist.all_reduce(c)
    model.train(was)
    loss, e1, e5 = _summarise(c.cpu())
    return {"loss": loss, "top1_error": e1, "top5_error": e5, "n": int(c[3])}


def _eval_stream(dataset, batch_size: int, rank: int = 0, world: int = 1, num_workers: int = 0,
                 limit: int | None = None):
    """Batches ``(images, labels)`` of the first ``limit`` images, un-augmented, in order."""
    source = _as_source(dataset)
    n = len(source) if limit is None else min(limit, len(source))
    idx = list(range(rank, n, world))
    batches = [idx[s:s + batch_size] for s in range(0, len(idx), batch_size)]
    if isinstance(source, RenderedScenes):
        return (source.batch(b, 0, augment=False) for b in batches)
    return _loader(source, batches, num_workers)


# ---------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------

def _label(epoch: float) -> str:
    return f"{epoch:g}"


class CheckpointStore:
    """The files of one training run, all written with :func:`zfcore.cache.save_tensors`.

    * ``weights_e<epoch>.pt``: the model's ``state_dict`` at a checkpoint epoch (Fig. 4);
    * ``resume_e<epoch>.pt``: everything needed to continue (model, optimiser, annealing state,
      history), one file per epoch; the previous one is deleted only after the new one is
      complete, and loading takes the newest file that passes its checksum, so a write killed
      half-way leaves the previous checkpoint in use;
    * ``history.json``: the per-epoch metrics, for people.
    """

    _RESUME = re.compile(r"resume_e(\d+)\.pt$")

    def __init__(self, directory: "str | Path"):
        self.dir = Path(directory)

    def weights_path(self, epoch: float) -> Path:
        return self.dir / f"weights_e{_label(epoch)}.pt"

    def save_weights(self, epoch: float, state: dict) -> Path:
        return zcache.save_tensors(self.weights_path(epoch), state)

    def load_weights(self, epoch: float) -> dict:
        return zcache.load_tensors(self.weights_path(epoch))

    def weight_epochs(self) -> list[float]:
        out = []
        for p in self.dir.glob("weights_e*.pt"):
            with contextlib.suppress(ValueError):
                out.append(float(p.name[len("weights_e"):-3]))
        return sorted(out)

    def resume_epochs(self) -> list[int]:
        return sorted(int(m.group(1)) for p in self.dir.glob("resume_e*.pt")
                      if (m := self._RESUME.search(p.name)))

    def save_resume(self, epoch: int, state: dict) -> Path:
        path = zcache.save_tensors(self.dir / f"resume_e{epoch}.pt", state)
        for old in self.resume_epochs():
            if old < epoch:
                for f in (self.dir / f"resume_e{old}.pt", self.dir / f"resume_e{old}.pt.sha256"):
                    with contextlib.suppress(FileNotFoundError):
                        f.unlink()
        return path

    def latest_resume(self, at_most: int | None = None) -> dict | None:
        """The newest readable resume state (at most ``at_most`` epochs in), or None."""
        for e in reversed(self.resume_epochs()):
            if at_most is not None and e > at_most:
                continue
            try:
                return zcache.load_tensors(self.dir / f"resume_e{e}.pt")
            except zcache.CacheError:
                continue  # killed mid-write or corrupt: fall back to the previous one
        return None

    def save_history(self, history: list[dict]) -> None:
        """Write ``history.json`` unless a longer run of the same configuration wrote more
        (a shorter run is a prefix of it, epoch for epoch)."""
        path = self.dir / "history.json"
        if path.is_file() and len(json.loads(path.read_text())) > len(history):
            return
        zcache.atomic_write_json(path, history)


# ---------------------------------------------------------------------------------------------
# The trainer
# ---------------------------------------------------------------------------------------------

@dataclass
class TrainRun:
    """A finished (possibly cached) run: where its files are and what it measured."""

    spec: TrainSpec
    directory: Path
    history: list[EpochMetrics]
    checkpoint_epochs: list[float] = field(default_factory=list)

    @property
    def final(self) -> EpochMetrics:
        return self.history[-1]

    @property
    def train_seconds(self) -> float:
        return sum(h.train_seconds for h in self.history)

    def model(self, epoch: float | None = None) -> nn.Module:
        """The network at ``epoch`` (default: the end of the run), in eval mode on the CPU."""
        epoch = float(self.spec.profile.epochs if epoch is None else epoch)
        store = CheckpointStore(self.directory)
        if epoch not in store.weight_epochs():
            raise TrainError(f"no checkpoint at epoch {epoch:g} in {self.directory}; saved: "
                             f"{[_label(e) for e in store.weight_epochs()]}")
        model = build_model(self.spec)
        load_model_state(model, store.load_weights(epoch), f"checkpoint epoch {epoch:g}")
        return model.eval()


def _distributed() -> tuple[int, int]:
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _device(profile: Profile) -> torch.device:
    if profile.device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise TrainError(f"profile {profile.name!r} asks for device {profile.device!r} but CUDA "
                             f"is not available; pass device='cpu'")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device(profile.device)


def train(spec: TrainSpec, train_set=None, val_set=None, progress: bool = True) -> TrainRun:
    """Train ``spec`` for ``spec.profile.epochs`` epochs, resuming from its cache entry.

    In a process group (``torchrun``) every process calls this; gradients are averaged by
    DistributedDataParallel and only rank 0 writes files. ``train_set``/``val_set`` default to
    ``zfcore.data.get_dataset(profile, "train"/"val")``.
    """
    p = spec.profile
    rank, world = _distributed()
    if p.batch_size % world:
        raise TrainError(f"batch_size {p.batch_size} is the global batch and must divide by the "
                         f"{world} processes")
    if train_set is None or val_set is None:
        dtrain, dval = _default_sources(spec)
        train_set = dtrain if train_set is None else _as_source(train_set)
        val_set = dval if val_set is None else _as_source(val_set)
    else:
        train_set, val_set = _as_source(train_set), _as_source(val_set)
    n_train = _length(train_set)
    if n_train < p.batch_size:
        raise TrainError(f"the training set ({n_train} images) is smaller than one batch")
    store = CheckpointStore(spec.entry())
    device = _device(p)
    steps = n_train // p.batch_size
    keep = spec.checkpoint_epochs()

    # channels_last: the same arithmetic, about 1.4x faster convolutions on CPU (oneDNN) and GPU
    model = build_model(spec).to(device, memory_format=torch.channels_last)
    opt = _optimizer(spec, model)
    history: list[dict] = []
    plateau = {"best": math.inf, "bad_epochs": 0, "scale": 1.0}
    start = 0
    state = store.latest_resume(at_most=p.epochs)
    if state is not None:
        load_model_state(model, state["model"], f"resume state in {store.dir}")
        opt.load_state_dict(state["optimizer"])
        history, plateau, start = list(state["history"]), dict(state["plateau"]), int(state["epoch"])
    if rank == 0:
        zcache.atomic_write_json(store.dir / "config.json", zcache._canonical(spec.key_config()))

    for source in (train_set, val_set):
        if isinstance(source, RenderedScenes) and start < p.epochs:
            source.prefetch(progress=progress and rank == 0)
    train_eval = _train_eval_source(train_set, spec)
    net, frozen = model, None
    bar_steps = (p.epochs - start) * steps
    bar = _progress(bar_steps, f"train {p.name}/{spec.arch}/{spec.variant}", progress and rank == 0)
    for epoch in range(start, p.epochs):
        torch.manual_seed(_seed("dropout", p.seed, epoch, rank))
        net.train()
        counts = torch.zeros(4, dtype=torch.float64, device=device)
        clipped = 0
        fractional = {round((e - epoch) * steps): e for e in keep if epoch < e < epoch + 1}
        t0 = time.perf_counter()
        for s, (x, y) in enumerate(_train_batches(train_set, spec, epoch, rank, world, steps), 1):
            now_frozen = _frozen_layers(spec, epoch + (s - 1) / steps)
            if now_frozen != frozen:
                frozen = now_frozen
                _apply_freeze(model, frozen)
                net = _wrap_ddp(model, device) if world > 1 else model
                net.train()
            x = x.to(device, non_blocking=True, memory_format=torch.channels_last)
            y = y.to(device, non_blocking=True)
            _set_lr(opt, spec, plateau["scale"], epoch * steps + s - 1, steps)
            out = net(x)
            loss = F.cross_entropy(out, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if p.clip_rms is not None:
                clipped += clip_filters_(model, p.clip_rms)
            counts += _counts(out.detach(), y, loss)
            if s in fractional and rank == 0:
                store.save_weights(fractional[s], _cpu_state(model))
            if bar is not None:
                bar.update(1)
                if s % 10 == 0 or s == steps:
                    _postfix(bar, counts, world, p.batch_size * s / (time.perf_counter() - t0))
        if world > 1:
            import torch.distributed as dist
            dist.all_reduce(counts)
        train_seconds = time.perf_counter() - t0
        t1 = time.perf_counter()
        fires = FireCounter(model)
        with fires.watch(model):
            val = evaluate(model, val_set, batch_size=max(p.batch_size, 256), device=device,
                           rank=rank, world=world, num_workers=p.num_workers)
        fit = evaluate(model, train_eval, batch_size=max(p.batch_size, 256), device=device, rank=rank,
                       world=world, num_workers=p.num_workers, limit=min(_length(val_set), n_train))
        dead = fires.result() if world == 1 else None   # per-process counts; only exact unsharded
        tl, t1e, t5e = _summarise(counts.cpu())
        history.append(dataclasses.asdict(EpochMetrics(
            epoch=epoch + 1, lr=p.lr * plateau["scale"] * 0.1 ** sum(epoch >= e for e in p.lr_drop_epochs),
            train_loss=tl, train_top1_error=t1e, train_top5_error=t5e,
            val_loss=val["loss"], val_top1_error=val["top1_error"], val_top5_error=val["top5_error"],
            train_seconds=train_seconds, val_seconds=time.perf_counter() - t1,
            images_per_s=steps * p.batch_size / train_seconds, clipped_filters=clipped,
            train_eval_top1_error=fit["top1_error"], train_eval_top5_error=fit["top5_error"],
            dead_share={k: dead.dead_share(k) for k in dead.fire_counts} if dead else {},
            max_filter_rms=max(float(filter_rms(c).max()) for c in conv_layers(model)))))
        _anneal_on_plateau(opt, plateau, val["top1_error"], spec.options)
        if bar is not None:
            bar.write(f"epoch {epoch + 1}/{p.epochs}: train loss {tl:.3f} err {t1e:.1f}% | "
                      f"val loss {val['loss']:.3f} err {val['top1_error']:.1f}% "
                      f"top5 {val['top5_error']:.1f}% | {history[-1]['images_per_s']:.0f} img/s")
        if rank == 0:
            if float(epoch + 1) in keep:
                store.save_weights(epoch + 1, _cpu_state(model))
            store.save_resume(epoch + 1, {"model": _cpu_state(model), "optimizer": opt.state_dict(),
                                          "plateau": plateau, "history": history, "epoch": epoch + 1})
            store.save_history(history)
    if bar is not None:
        bar.close()
    if world > 1:
        import torch.distributed as dist
        dist.barrier()
    if rank == 0 and float(p.epochs) not in store.weight_epochs():
        store.save_weights(p.epochs, _cpu_state(model))  # resumed exactly at the end
    return TrainRun(spec, store.dir, [EpochMetrics(**h) for h in history[:p.epochs]],
                    [x for x in store.weight_epochs() if x <= p.epochs])


def _cpu_state(model: nn.Module) -> dict:
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}


def _wrap_ddp(model: nn.Module, device: torch.device) -> nn.Module:
    from torch.nn.parallel import DistributedDataParallel
    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def _anneal_on_plateau(opt: torch.optim.Optimizer, plateau: dict, val_error: float,
                       options: TrainOptions) -> None:
    """Section 3: "annealed by hand when the validation error plateaus", made a rule."""
    if options.plateau_patience == 0:
        return
    if val_error < plateau["best"] - 1e-9:
        plateau["best"], plateau["bad_epochs"] = float(val_error), 0
        return
    plateau["bad_epochs"] += 1
    if plateau["bad_epochs"] >= options.plateau_patience:
        for g in opt.param_groups:
            g["lr"] *= options.plateau_factor
        plateau["scale"] *= options.plateau_factor
        plateau["bad_epochs"] = 0


def _progress(total: int, desc: str, enabled: bool):
    if not enabled or total <= 0:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, unit="batch", leave=True, mininterval=0.5)


def _postfix(bar, counts: torch.Tensor, world: int, images_per_s: float) -> None:
    loss, e1, _ = _summarise(counts.cpu())
    bar.set_postfix(loss=f"{loss:.3f}", acc=f"{100 - e1:.1f}%", img_s=f"{images_per_s * world:.0f}",
                    refresh=False)


# ---------------------------------------------------------------------------------------------
# The cached entry points every notebook uses
# ---------------------------------------------------------------------------------------------

def training_run(profile: "str | Profile" = "mini", arch: str = "zfnet", variant: str = "zf",
                 progress: bool = True, **overrides) -> TrainRun:
    """Train (or load from the cache) and return the :class:`TrainRun` with its history and
    checkpoints. Overrides are profile fields (``epochs=2``, ``optimizer="sgd"``,
    ``clip_rms=None``, ...) or :class:`TrainOptions` fields (``layer_lr={"layer1": 0.1}``)."""
    spec = make_spec(profile, arch, variant, **overrides)
    store = CheckpointStore(spec.entry())
    with zcache.entry_lock(store.dir):
        cached = _cached_run(spec, store)
        if cached is not None:
            return cached
        return train(spec, progress=progress)


def _cached_run(spec: TrainSpec, store: CheckpointStore) -> TrainRun | None:
    hist_file = store.dir / "history.json"
    e = spec.profile.epochs
    if not hist_file.is_file() or float(e) not in store.weight_epochs():
        return None
    history = json.loads(hist_file.read_text())
    if len(history) < e:
        return None
    try:
        store.load_weights(e)
    except zcache.CacheError:
        return None
    return TrainRun(spec, store.dir, [EpochMetrics(**h) for h in history[:e]],
                    [x for x in store.weight_epochs() if x <= e])   # a prefix run sees its own checkpoints


def cached_model(profile: "str | Profile" = "mini", arch: str = "zfnet", variant: str = "zf",
                 **overrides) -> "nn.Module | None":
    """The network :func:`trained_model` would return if its run is already in the cache (eval
    mode, CPU), else ``None``: never trains. For benchmarks that time a trained model when there
    is one and say which weights they timed."""
    spec = make_spec(profile, arch, variant, **overrides)
    store = CheckpointStore(spec.entry())
    run = _cached_run(spec, store) if store.dir.is_dir() else None
    return run.model() if run is not None else None


def compare_throughput(profile: "str | Profile", frozen: "Mapping[str, Sequence[str]]",
                       steps: int = 3, rounds: int = 2, **overrides) -> dict[str, float]:
    """Training images per second of the profile's model with different sets of frozen layers,
    measured now, alternating, on one batch of training images (median of ``rounds``).

    Wall times recorded when runs were trained depend on the machine's load at the time; this
    compares the compute of configurations (e.g. per-layer freezing against one global rate)
    under the same load.
    """
    spec = make_spec(profile, **overrides)
    p = spec.profile
    memo = rendered_split(p, "train")
    idx = list(range(p.batch_size))
    if memo is None:
        raise TrainError(f"compare_throughput renders a batch of procedural scenes; profile "
                         f"{p.name!r} has none (use tiny or mini)")
    x, y = memo.batch(idx, 0, augment=False)
    x = x.contiguous(memory_format=torch.channels_last)
    results: dict[str, list[float]] = {name: [] for name in frozen}
    for _ in range(rounds):
        for name, layers in frozen.items():
            model = build_model(spec).to(memory_format=torch.channels_last)
            _apply_freeze(model, {layer_key(l, LAYER_KEYS) for l in layers})
            opt = _optimizer(spec, model)
            model.train()
            for i in range(steps + 1):                      # the first step warms up
                if i == 1:
                    t0 = time.perf_counter()
                loss = F.cross_entropy(model(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            results[name].append(steps * len(x) / (time.perf_counter() - t0))
    return {name: sorted(v)[len(v) // 2] for name, v in results.items()}


def comparison_overrides(profile: "str | Profile") -> dict:
    """The shorter schedule of the comparison trainings (Fig. 6 variants, Table 3 ablations,
    per-layer rates): ``profile.comparison_epochs`` (4 on ``mini``), else half of the profile's
    epochs, at least one, never more than the profile's epochs, on the same data.

    Being a prefix of the profile's own schedule, its ``zf`` run *is* the main model's checkpoint
    at that epoch (no extra training), and every variant is compared at the same budget. On
    ``mini`` that is 4 epochs of 20,000 images (the main model is at 76 % validation accuracy
    there, past the steep part of its curve): 3-5 minutes per variant on 2 quiet cores, so
    the ten comparison trainings of notebooks 04, 06 and 09 took 38 minutes here the first time.
    """
    p = get_profile(profile)
    return {"epochs": min(p.comparison_epochs or max(1, round(p.epochs / 2)), p.epochs)}


def trained_model(profile: "str | Profile" = "mini", arch: str = "zfnet", variant: str = "zf",
                  progress: bool = True, **overrides) -> nn.Module:
    """The profile's trained network in eval mode on the CPU, trained on first use and cached.

    ``arch`` is ``"zfnet"`` (Fig. 3) or ``"krizhevsky"`` (11x11/4 first layer, Fig. 6);
    ``variant`` a key of :data:`zfcore.models.TABLE3_VARIANTS`; overrides as in
    :func:`training_run`. Concurrent callers wait for one training (a lock on the cache entry).
    """
    run = training_run(profile, arch, variant, progress=progress, **overrides)
    return run.model()


# ---------------------------------------------------------------------------------------------
# Command line: python -m zfcore.train / torchrun ... -m zfcore.train
# ---------------------------------------------------------------------------------------------

def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main(argv: "list[str] | None" = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m zfcore.train", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="mini")
    ap.add_argument("--arch", default="zfnet", choices=ARCHS)
    ap.add_argument("--variant", default="zf", choices=sorted(TABLE3_VARIANTS))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a profile field or trainer option (values are read as JSON, "
                         "else as text), e.g. --set epochs=10 --set optimizer=sgd "
                         "--set init=paper --set clip_rms=null --set layer_lr='{\"layer1\": 0.1}'")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    overrides = {}
    for item in args.set:
        if "=" not in item:
            ap.error(f"--set takes KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        overrides[k] = _parse_value(v)
    spec = make_spec(args.profile, args.arch, args.variant, **overrides)
    if spec.profile.threads:
        torch.set_num_threads(spec.profile.threads)
    import torch.distributed as dist
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if spec.profile.device.startswith("cuda") and torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group(backend)
    try:
        if world > 1:
            run = train(spec, progress=not args.no_progress)
        else:
            run = training_run(args.profile, args.arch, args.variant,
                               progress=not args.no_progress, **overrides)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if int(os.environ.get("RANK", "0")) == 0:
        f = run.final
        print(f"{run.directory}: {len(run.history)} epochs, val top-1 error {f.val_top1_error:.2f}% "
              f"(accuracy {f.val_accuracy:.2f}%), top-5 {f.val_top5_error:.2f}%, "
              f"{run.train_seconds:.0f} s of training")
    return 0


if __name__ == "__main__":
    sys.exit(main())
