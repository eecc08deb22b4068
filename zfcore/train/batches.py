"""The trainer's data: deterministic, shard-invariant batches with the paper's crops and flips.

Section 3.1: every training image is cropped at the centre or one of the four corners (224 of
256, scaled here to the input side) and mirrored at random (:func:`zfcore.data.paper_crops`); the
crop and flip are a function of (seed, epoch, index), and the order of an epoch a function of
(seed, epoch) (:func:`epoch_order`), so training is a function of (configuration, epoch): it
resumes bit for bit, and a global batch is the same whatever the number of processes sharing it.
A procedural split is rendered once per process and kept as 8-bit images
(:class:`RenderedScenes`); real data sets are read through a ``DataLoader``.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Iterator

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .. import cache as zcache
from .. import data
from ..data.transforms import crop_choices
from ..profiles import Profile
from .spec import TrainSpec, generator_version


def derived_seed(*parts: Any) -> int:
    """A 60-bit seed derived from ``parts`` (a stable hash): the epoch order, the dropout masks
    and the crops each draw from their own stream, a function of (purpose, seed, epoch, ...)."""
    return int(zcache.config_hash(list(parts), length=15), 16)


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffled order of the training set in ``epoch`` (a function of seed and epoch)."""
    g = torch.Generator().manual_seed(derived_seed("order", seed, epoch))
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
        return (
            hasattr(dataset, "scenes")
            and hasattr(dataset, "labels")
            and hasattr(dataset, "size")
            and len(dataset) * 3 * dataset.size**2 <= MEMO_BYTES
        )

    def prefetch(self, progress: bool = False, batch_size: int = 500) -> "RenderedScenes":
        """Render every scene not rendered yet (so that training time excludes rendering)."""
        todo = (~self.ready).nonzero().flatten()
        chunks = [c for c in torch.split(todo, batch_size) if len(c)]
        if progress and chunks:
            chunks = tqdm(chunks, desc=f"rendering {self.dataset.split} scenes", unit="batch")
        for c in chunks:
            self._render(c)
        return self

    def _render(self, todo: torch.Tensor) -> None:
        rendered = self.dataset.scenes(todo.tolist()).images
        self.images[todo] = (rendered * 255).round_().clamp_(0, 255).to(torch.uint8)
        self.ready[todo] = True

    def batch(
        self,
        indices: torch.Tensor,
        epoch: int,
        augment: bool,
        device: "torch.device | str | None" = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised images and labels of ``indices`` with ``epoch``'s crops and flips, on
        ``device`` (default: the CPU)."""
        return self.finish(self.host_batch(indices, epoch, augment), device)

    def host_batch(self, indices, epoch: int, augment: bool, pin: bool = False) -> tuple:
        """The CPU's share of :meth:`batch`: the 8-bit images, the labels and the crop choices
        (in page-locked memory with ``pin``, ready for an asynchronous copy to a GPU)."""
        indices = torch.as_tensor(indices, dtype=torch.long)
        todo = indices[~self.ready[indices]]
        if len(todo):
            self._render(todo)
        x, y = self.images[indices], self.labels[indices]
        if pin:
            x, y = x.pin_memory(), y.pin_memory()
        return x, y, crop_choices(self.dataset.seed, epoch, indices.numpy()) if augment else None

    def finish(self, host: tuple, device: "torch.device | str | None" = None) -> tuple:
        """The rest of :meth:`batch` on ``device``: the 8-bit images travel (a quarter of the
        bytes of floats, without waiting for the GPU), then become floats, are cropped, flipped
        and normalised there."""
        x, y, choices = host
        if device is not None and torch.device(device).type != "cpu":
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        x = x.float().div_(255)
        if choices is not None:
            x = data.paper_crops(x, *choices)
        return data.normalize(x, self.dataset.profile), y


def as_source(dataset):
    """A training or evaluation source: a procedural split wrapped in :class:`RenderedScenes`
    (rendered once, kept as 8-bit images); other data sets, and functions ``epoch -> Dataset``,
    as given."""
    if (
        dataset is None
        or isinstance(dataset, RenderedScenes)
        or callable(dataset)
        and not hasattr(dataset, "__len__")
    ):
        return dataset
    return RenderedScenes(dataset) if RenderedScenes.fits(dataset) else dataset


def _shards(
    n: int, spec: TrainSpec, epoch: int, rank: int, world: int, steps: int
) -> list[list[int]]:
    """This process's share of every global batch of ``epoch`` (the last partial one dropped).

    Every global batch is the same whatever the number of processes; process ``rank`` takes the
    ``rank``-th contiguous slice, so DDP with ``world`` processes averages exactly the gradient
    one process computes on the whole batch.
    """
    b = spec.profile.batch_size
    order = epoch_order(n, spec.profile.seed, epoch)
    local = b // world
    return [order[s * b + rank * local : s * b + (rank + 1) * local].tolist() for s in range(steps)]


def index_loader(dataset, batches: list[list[int]], num_workers: int, pin_memory: bool = False):
    """A ``DataLoader`` over ``dataset`` that yields exactly ``batches`` (lists of indices), in
    order, with ``num_workers`` workers."""
    return DataLoader(
        dataset, batch_sampler=batches, num_workers=num_workers, pin_memory=pin_memory
    )


def train_batches(
    source,
    spec: TrainSpec,
    epoch: int,
    rank: int,
    world: int,
    steps: int,
    device: "torch.device | str" = "cpu",
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The batches this process trains on in ``epoch``.

    ``source`` is a :class:`RenderedScenes`, a ``Dataset`` (used as given: it does its own
    augmentation, if any), or a function ``epoch -> Dataset`` (real data sets, whose crops and
    flips depend on the epoch); the latter two are read through a ``DataLoader`` with
    ``profile.num_workers`` workers (in pinned memory for a GPU).

    For a GPU (``device``), rendered scenes are prepared ahead: a thread does the CPU's share of
    the next batches (crop choices, 8-bit gather, page-locking) while the GPU trains on the ones
    before, and the crops and flips run on the GPU (:meth:`RenderedScenes.finish`). On the CPU
    the batches are made in turn.
    """
    device = torch.device(device)
    if isinstance(source, RenderedScenes):
        shards = _shards(len(source), spec, epoch, rank, world, steps)
        augment = spec.options.augment
        if device.type == "cpu":
            for idx in shards:
                yield source.batch(idx, epoch, augment)
            return
        for host in _ahead(source.host_batch(idx, epoch, augment, pin=True) for idx in shards):
            yield source.finish(host, device)
        return
    dataset = source(epoch) if callable(source) and not hasattr(source, "__len__") else source
    yield from index_loader(
        dataset,
        _shards(len(dataset), spec, epoch, rank, world, steps),
        spec.profile.num_workers,
        pin_memory=device.type == "cuda",
    )


def _ahead(items: Iterator, depth: int = 3) -> Iterator:
    """``items``, with up to ``depth`` of them made ahead in a background thread (its exceptions
    are raised here; leaving the loop early stops it)."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop, end = threading.Event(), object()

    def put(entry) -> bool:
        while not stop.is_set():
            try:
                q.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work():
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((end, None))
        except BaseException as e:  # handed to the consumer, which raises it
            put((end, e))

    worker = threading.Thread(target=work, name="zfcore-batches", daemon=True)
    worker.start()
    try:
        while True:
            item, error = q.get()
            if item is end:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
        worker.join()


_MEMO: "dict[tuple, RenderedScenes]" = {}


def rendered_split(profile: Profile, split: str) -> "RenderedScenes | None":
    """The process-wide :class:`RenderedScenes` of a procedural split (shared by every training
    in this process that uses the same data, e.g. a notebook's Table 3 variants), or None."""
    ds = data.get_dataset(profile, split)
    if not RenderedScenes.fits(ds):
        return None
    key = (
        profile.dataset,
        profile.image_size,
        profile.data_seed,
        profile.num_classes,
        split,
        len(ds),
        generator_version(),
    )
    if key not in _MEMO:
        if len(_MEMO) >= 2:  # the train and val split of one data set
            _MEMO.pop(next(iter(_MEMO)))
        _MEMO[key] = RenderedScenes(ds)
    return _MEMO[key]


def default_sources(spec: TrainSpec):
    """The profile's training split (augmented per epoch: rendered scenes, or a function
    ``epoch -> Dataset`` with a ``length``) and validation split."""
    p, aug = spec.profile, spec.options.augment
    train_source = rendered_split(p, "train")
    if train_source is None:

        def train_source(epoch, _p=p):
            return data.get_dataset(_p, "train", augment=aug, epoch=epoch)

        train_source.length = len(data.get_dataset(p, "train"))
    val_source = rendered_split(p, "val") or data.get_dataset(p, "val")
    return train_source, val_source


def train_eval_source(train_set, spec: TrainSpec):
    """The training images as evaluated (no augmentation): what eval-mode training error reads."""
    if isinstance(train_set, RenderedScenes) or hasattr(train_set, "__getitem__"):
        return train_set
    return data.get_dataset(spec.profile, "train")


def source_length(source) -> int:
    """The number of images of a source (``len``, or the ``length`` of a function
    ``epoch -> Dataset``)."""
    return (
        source.length
        if hasattr(source, "length") and not hasattr(source, "__len__")
        else len(source)
    )
