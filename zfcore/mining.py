"""Top-k mining at data-set scale: the strongest activations behind Fig. 2 and Fig. 4.

Fig. 2 of Zeiler & Fergus (2014) shows, "for a given feature map, the top 9 activations" over the
validation set, each projected to pixel space; Fig. 4 shows "the strongest activation (across all
training examples) within a given feature map" at several epochs. Both need, for every feature map
of every layer, the k strongest activations over a whole data set.

:func:`mine_topk` does it in one streaming pass for all maps of layers 1-5 at once: per batch one
forward pass (stopped after the deepest mined layer), then for each map the strongest activation of
each image (value and position) merged into a running top-k. As in the paper's figures, the k
entries of a map come from k distinct images. Memory is ``layers x maps x k`` whatever the data set
size; no image is kept. Results are mergeable (:meth:`TopK.merge`): mining shards (DataLoader
workers, processes, machines under ``torchrun``, see :func:`gather_merge`) and merging gives
exactly the result of one pass over the whole. :func:`mine_dataset` caches results by a hash of
the model's weights and the data configuration.

Ties are broken deterministically (larger value first, then smaller image index), so results do
not depend on batch size, order or sharding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset, SequentialSampler, Subset
from tqdm.auto import tqdm

from .data import denormalize, get_dataset, normalize
from .deconv import Requests, layer_activations, project, requests
from .errors import ZFCoreError
from .models import LayerError, layer_keys, layer_names, to_device
from .profiles import Profile, get_profile
from .receptive import crop_patches, input_problem, receptive_field
from .study import Result, cached_study

__all__ = [
    "DEFAULT_LAYERS",
    "LayerTopK",
    "TopK",
    "MiningError",
    "MiningTypeError",
    "TopKMiner",
    "mine_topk",
    "mine_dataset",
    "gather_merge",
    "top_requests",
    "pick_maps",
    "TopProjections",
    "project_top",
    "TopImages",
    "load_top_images",
    "TopPanels",
    "top_panels",
    "strongest_activation",
]

#: The layers mined by default: the convolutional layers of Fig. 2.
DEFAULT_LAYERS = ("layer1", "layer2", "layer3", "layer4", "layer5")
MINING_VERSION = 1


class MiningError(ZFCoreError, ValueError):
    """Bad arguments to the miner, or results that cannot be merged."""


class MiningTypeError(MiningError, TypeError):
    """An argument of the wrong type: a model that is not a ``torch.nn.Module``, a result that is
    not a :class:`TopK`."""


@dataclass
class LayerTopK(Result):
    """The top-k of every feature map of one layer, strongest first.

    ``values``, ``images`` (data set indices), ``ys``, ``xs`` (position of the activation in the
    map) and ``labels`` (the image's class, ``-1`` if unknown) are ``(C, k)``. Slots not filled
    (fewer than k images seen) have value ``-inf`` and image ``-1``.
    """

    values: torch.Tensor
    images: torch.Tensor
    ys: torch.Tensor
    xs: torch.Tensor
    labels: torch.Tensor

    @property
    def maps(self) -> int:
        return int(self.values.shape[0])

    @property
    def k(self) -> int:
        return int(self.values.shape[1])

    @staticmethod
    def empty(maps: int, k: int, device: "torch.device | str" = "cpu") -> "LayerTopK":
        neg = torch.full((maps, k), float("-inf"), device=device)
        m1 = torch.full((maps, k), -1, dtype=torch.long, device=device)
        return LayerTopK(neg, m1.clone(), m1.clone(), m1.clone(), m1.clone())

    def to(self, device: "torch.device | str") -> "LayerTopK":
        return LayerTopK(*(t.to(device) for t in self._fields()))

    def merged(self, cand: "LayerTopK") -> "LayerTopK":
        """Keep the k best of ``self`` and ``cand`` (value descending, then image ascending)."""
        k = self.k
        cat = [torch.cat([a, b], 1) for a, b in zip(self._fields(), cand._fields())]
        values, images = cat[0], cat[1]
        # two stable sorts: by image ascending, then by value descending
        o1 = torch.sort(images, dim=1, stable=True).indices
        v1 = torch.gather(values, 1, o1)
        o2 = torch.sort(v1, dim=1, descending=True, stable=True).indices[:, :k]
        order = torch.gather(o1, 1, o2)
        return LayerTopK(*[torch.gather(t, 1, order) for t in cat])

    def _fields(self):
        return (self.values, self.images, self.ys, self.xs, self.labels)


@dataclass
class TopK:
    """Top-k activations of every feature map of several layers (the result of mining).

    ``layers[name]`` is a :class:`LayerTopK`; ``n_images`` how many images were seen.
    """

    k: int
    layers: dict[str, LayerTopK]
    n_images: int = 0

    def __getitem__(self, layer: str) -> LayerTopK:
        if layer not in self.layers:
            raise LayerError(
                f"layer {layer!r} was not mined: mined layers are {', '.join(self.layers)}"
            )
        return self.layers[layer]

    def merge(self, other: "TopK") -> "TopK":
        """The top-k of the union of the two data sets (disjoint image indices expected)."""
        if not isinstance(other, TopK):
            raise MiningTypeError(
                f"can only merge TopK with TopK, got {type(other).__name__}: pass the result of "
                f"mine_topk or mine_dataset"
            )
        if other.k != self.k or set(other.layers) != set(self.layers):
            raise MiningError(
                f"cannot merge top-{self.k} of {sorted(self.layers)} with top-"
                f"{other.k} of {sorted(other.layers)}: mine both with the same k "
                f"and layers"
            )
        for name, lt in self.layers.items():
            if other.layers[name].maps != lt.maps:
                raise MiningError(
                    f"{name}: {lt.maps} vs {other.layers[name].maps} feature maps; "
                    f"the two results come from different models"
                )
        return TopK(
            self.k,
            {n: lt.merged(other.layers[n]) for n, lt in self.layers.items()},
            self.n_images + other.n_images,
        )

    def to_dict(self) -> dict:
        return {
            "k": self.k,
            "n_images": self.n_images,
            "version": MINING_VERSION,
            "layers": {n: lt.to_dict() for n, lt in self.layers.items()},
        }

    @classmethod
    def from_dict(cls, d: dict) -> "TopK":
        return cls(
            int(d["k"]), {n: LayerTopK(**lt) for n, lt in d["layers"].items()}, int(d["n_images"])
        )

    def equal(self, other: "TopK") -> bool:
        """Same entries (values, images, positions, labels) for every map."""
        return (
            self.k == other.k
            and list(self.layers) == list(other.layers)
            and all(
                all(torch.equal(a, b) for a, b in zip(lt._fields(), other.layers[n]._fields()))
                for n, lt in self.layers.items()
            )
        )


# ---------------------------------------------------------------------------------------------
# The streaming miner
# ---------------------------------------------------------------------------------------------


class TopKMiner:
    """Streaming top-k over batches: ``miner.update(images, indices, labels)``, then
    ``miner.result()``. One forward pass per batch, stopped after the deepest mined layer.

    The running top-k lives on the model's device, where each batch's activations are reduced
    and merged into it; nothing is read back until :meth:`result` (on the CPU)."""

    def __init__(self, model: nn.Module, k: int = 9, layers: Sequence[str] | None = None):
        if not isinstance(model, nn.Module):
            raise MiningTypeError(
                f"model must be a torch.nn.Module, got {type(model).__name__}: pass the network "
                f"itself (e.g. zfcore.zoo.model_for_profile)"
            )
        if not isinstance(k, int) or k < 1:
            raise MiningError(f"k must be a positive int, got {k!r}")
        names = layer_names(model)
        if layers is None:
            layers = [l for l in DEFAULT_LAYERS if l in names]
        if not layers:
            raise MiningError("no layers to mine")
        layers = layer_keys(layers, model)
        self.model, self.k, self.layer_list = model, k, list(layers)
        self.state: dict[str, LayerTopK] = {}
        self.n_images = 0
        self._next_index = 0

    @torch.no_grad()
    def update(self, images: torch.Tensor, indices=None, labels=None) -> None:
        """Add a batch of normalised images. ``indices``: their data set indices (default: the
        count of images seen so far, i.e. a sequential pass); ``labels``: their classes."""
        if not isinstance(images, torch.Tensor) or images.dim() != 4:
            raise MiningError(
                f"images must be a (N, C, H, W) tensor, got "
                f"{getattr(images, 'shape', type(images).__name__)}"
            )
        for layer in self.layer_list:
            problem = input_problem(self.model, layer, images)
            if problem:
                raise MiningError(problem)
        b = images.shape[0]
        if indices is None:
            idx = torch.arange(self._next_index, self._next_index + b)
        else:
            idx = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
            if idx.numel() != b:
                raise MiningError(f"{b} images but {idx.numel()} indices")
        self._next_index = int(idx.max()) + 1 if b else self._next_index
        lab = (
            torch.full((b,), -1, dtype=torch.long, device="cpu")
            if labels is None
            else torch.as_tensor(labels, dtype=torch.long).reshape(-1).cpu()
        )
        acts = layer_activations(self.model, images, self.layer_list)
        device = next(iter(acts.values())).device
        idx, lab = to_device(idx, device), to_device(lab, device)
        for layer, a in acts.items():
            a = a.detach().float()
            if a.dim() == 2:
                a = a[:, :, None, None]
            c, w = a.shape[1], a.shape[-1]
            v, pos = a.flatten(2).max(2)  # (B, C): each image's strongest
            cand = LayerTopK(
                v.T.contiguous(),
                idx.expand(c, b).clone(),
                (pos // w).T.contiguous(),
                (pos % w).T.contiguous(),
                lab.expand(c, b).clone(),
            )
            cur = self.state.get(layer)
            if cur is None:
                cur = LayerTopK.empty(c, self.k, device)
            self.state[layer] = cur.merged(cand)
        self.n_images += b

    def result(self) -> TopK:
        """The top-k so far, on the CPU."""
        if not self.state:
            raise MiningError("no images were mined: the data was empty")
        return TopK(self.k, {l: self.state[l].to("cpu") for l in self.layer_list}, self.n_images)


def _batches(data, batch_size: int, start_index: int = 0):
    """Yield ``(images, indices or None, labels or None)`` from a Dataset, a DataLoader or any
    iterable of batches (tensors, ``(images, labels)`` or ``(images, labels, indices)``).
    A Dataset's (or tensor's) position ``i`` is image ``start_index + i``."""
    if isinstance(data, torch.Tensor):
        for s in range(0, len(data), batch_size):
            e = min(s + batch_size, len(data))
            yield data[s:e], torch.arange(start_index + s, start_index + e), None
        return
    if isinstance(data, Dataset) and not isinstance(data, IterableDataset):
        n = len(data)
        for s in range(0, n, batch_size):
            ids = list(range(s, min(s + batch_size, n)))
            if hasattr(data, "images"):  # procedural scenes: batch render
                x, y = data.images(ids)
            else:
                items = (
                    data.__getitems__(ids)
                    if hasattr(data, "__getitems__")
                    else [data[i] for i in ids]
                )
                x = torch.stack([it[0] for it in items])
                y = torch.as_tensor([int(it[1]) for it in items])
            yield x, torch.as_tensor(ids) + start_index, y
        return
    if isinstance(data, DataLoader) and not isinstance(data.sampler, SequentialSampler):
        raise MiningError(
            "the DataLoader shuffles, so image indices are unknown: mine with "
            "shuffle=False or yield (images, labels, indices) batches"
        )
    for batch in data:
        if isinstance(batch, torch.Tensor):
            yield batch, None, None
        elif isinstance(batch, (list, tuple)) and len(batch) in (2, 3):
            yield batch[0], (batch[2] if len(batch) == 3 else None), batch[1]
        else:
            raise MiningError(
                "each batch must be images, (images, labels) or (images, labels, indices)"
            )


def mine_topk(
    model: nn.Module,
    data,
    k: int = 9,
    layers: Sequence[str] | None = None,
    batch_size: int = 128,
    progress: bool = True,
    start_index: int = 0,
) -> TopK:
    """The k strongest activations of every feature map of ``layers`` (default: layers 1-5 that
    the model has) over ``data``, in one streaming pass (Fig. 2, Fig. 4).

    ``data``: a ``Dataset`` of ``(image, label)`` or a tensor of images (position ``i`` is image
    ``start_index + i``), a non-shuffling ``DataLoader`` or any iterable of ``images`` /
    ``(images, labels)`` batches (images counted from ``start_index``), or of
    ``(images, labels, indices)`` batches. Works on any
    checkpoint of any supported model; the model's train/eval state is restored afterwards.
    """
    miner = TopKMiner(model, k, layers)
    miner._next_index = int(start_index)
    it = _batches(data, batch_size, int(start_index))
    if progress:
        total = None
        if isinstance(data, torch.Tensor) or (
            isinstance(data, Dataset) and hasattr(data, "__len__")
        ):
            total = -(-len(data) // batch_size)
        elif hasattr(data, "__len__"):
            total = len(data)  # a DataLoader or a list of batches
        it = tqdm(it, total=total, desc=f"mining top-{k}", unit="batch")
    for x, idx, lab in it:
        miner.update(x, idx, lab)
    return miner.result()


def gather_merge(result: TopK) -> TopK:
    """Under ``torch.distributed`` (e.g. ``torchrun``), merge every rank's shard result; every rank
    gets the whole. Without an initialised process group, returns ``result`` unchanged."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return result
    parts = [None] * dist.get_world_size()
    dist.all_gather_object(parts, result.to_dict())
    merged = TopK.from_dict(parts[0])
    for p in parts[1:]:
        merged = merged.merge(TopK.from_dict(p))
    return merged


# ---------------------------------------------------------------------------------------------
# Cached mining of a profile's data set
# ---------------------------------------------------------------------------------------------


def mine_dataset(
    model: nn.Module,
    profile: "str | Profile" = "mini",
    split: str = "val",
    group: str = "main",
    k: int = 9,
    layers: Sequence[str] | None = None,
    n_images: int | None = None,
    batch_size: int | None = None,
    progress: bool = True,
    cache: bool = True,
) -> TopK:
    """:func:`mine_topk` over the first ``n_images`` (default: all) of a profile's ``split``,
    cached under ``<cache_dir>/topk/<hash>/`` by a hash of the model's weights
    (:func:`zfcore.models.model_fingerprint`), the profile's data configuration, split, group, k
    and layers. Call it on each checkpoint of a training run to follow Fig. 4."""
    p = get_profile(profile)
    ds = get_dataset(p, split, group)
    n = len(ds) if n_images is None else int(n_images)
    if not 1 <= n <= len(ds):
        raise MiningError(
            f"n_images must be between 1 and {len(ds)} (the {split} split of "
            f"{p.name}), got {n_images!r}"
        )
    names = layer_names(model)
    layer_list = [l for l in DEFAULT_LAYERS if l in names] if layers is None else list(layers)
    sub = Subset(ds, range(n)) if n < len(ds) else ds
    bs = int(batch_size or p.batch_size)

    def build():
        data = _SubsetScenes(ds, n) if hasattr(ds, "images") else sub
        return mine_topk(model, data, k, layer_list, bs, progress).to_dict()

    data = {
        k_: v
        for k_, v in p.identity().items()
        if k_
        in (
            "name",
            "dataset",
            "image_size",
            "data_seed",
            "num_classes",
            "n_train",
            "n_val",
            "n_test",
        )
    }
    settings = {"split": split, "group": group, "n": n, "k": k, "layers": layer_list}
    return TopK.from_dict(
        cached_study("topk", MINING_VERSION, model, p, settings, build, data=data, cache=cache)
    )


class _SubsetScenes(Dataset):
    """The first ``n`` scenes of a procedural data set, keeping its batch renderer."""

    def __init__(self, ds, n):
        self.ds, self.n = ds, n

    def __len__(self):
        return self.n

    def images(self, ids):
        return self.ds.images(ids)

    def __getitem__(self, i):
        return self.ds[i]


# ---------------------------------------------------------------------------------------------
# From mined entries to projections
# ---------------------------------------------------------------------------------------------


def top_requests(
    result: TopK,
    layer: str,
    channels: Sequence[int] | None = None,
    ranks: Sequence[int] | None = None,
) -> tuple[torch.Tensor, Requests]:
    """Deconvnet requests for the mined entries of ``layer``: ``channels`` (default all) x
    ``ranks`` (default ``range(k)``; ``[0]`` for the strongest only, as in Fig. 4).

    Returns ``(dataset_indices, requests)``: load the images of ``dataset_indices`` (sorted,
    distinct) and pass them with ``requests`` to :func:`zfcore.deconv.project`; request order is
    channel-major, rank-minor. Unfilled slots are skipped.
    """
    lt = result[layer]
    chans = (
        torch.arange(lt.maps) if channels is None else torch.as_tensor(channels, dtype=torch.long)
    )
    rk = torch.arange(lt.k) if ranks is None else torch.as_tensor(ranks, dtype=torch.long)
    if (chans < 0).any() or (chans >= lt.maps).any():
        raise MiningError(f"{layer} has {lt.maps} feature maps; got channels {chans.tolist()}")
    if (rk < 0).any() or (rk >= lt.k).any():
        raise MiningError(f"ranks must be in 0 ... {lt.k - 1}, got {rk.tolist()}")
    c = chans.repeat_interleave(len(rk))
    r = rk.repeat(len(chans))
    img = lt.images[c, r]
    keep = img >= 0
    c, r, img = c[keep], r[keep], img[keep]
    uniq, local = torch.unique(img, return_inverse=True)
    return uniq, requests(local, c, lt.ys[c, r], lt.xs[c, r])


def pick_maps(result: TopK, layer: str, n: int) -> list[int]:
    """``n`` feature maps of ``layer`` to show, spread evenly over the maps that fire ranked by
    their strongest activation (strongest first), so a figure is neither only the loudest maps nor
    dead ones."""
    lt = result[layer]
    if n < 1:
        raise MiningError(f"n must be >= 1, got {n}")
    order = torch.argsort(lt.values[:, 0], descending=True, stable=True)
    alive = order[lt.values[order, 0] > 0]
    pool = alive if len(alive) else order
    if n >= len(pool):
        return pool.tolist()
    pick = torch.linspace(0, len(pool) - 1, n).round().long()
    return pool[pick].tolist()


@dataclass
class TopProjections:
    """Projections of mined entries (Fig. 2, Fig. 4): request ``r`` is rank ``ranks[r]`` of map
    ``channels[r]``, at ``(ys[r], xs[r])`` of data set image ``images[r]`` (class ``labels[r]``);
    ``pixels`` ``(R, C, H, W)`` in the model's input space; ``activation`` the projected values."""

    layer: str
    rule: str
    channels: torch.Tensor
    ranks: torch.Tensor
    images: torch.Tensor
    ys: torch.Tensor
    xs: torch.Tensor
    labels: torch.Tensor
    pixels: torch.Tensor
    activation: torch.Tensor


def project_top(
    model: nn.Module,
    result: TopK,
    layer: str,
    load_images,
    channels=None,
    ranks=None,
    rule: str = "deconvnet",
    batch_size: "int | None" = None,
    progress: bool = False,
    method: str = "auto",
) -> TopProjections:
    """Project mined entries of ``layer`` to pixel space (Fig. 2: ``ranks=range(9)``; Fig. 4:
    ``ranks=[0]``). ``load_images(indices)`` returns the normalised model inputs of those data set
    indices (e.g. ``lambda i: dataset.images(i)[0]`` for procedural scenes). Request order is
    channel-major, rank-minor. ``method`` and ``batch_size`` go to :func:`zfcore.deconv.project`
    (``None``: its measured chunk size)."""
    lt = result[layer]
    chans = (
        torch.arange(lt.maps) if channels is None else torch.as_tensor(channels, dtype=torch.long)
    )
    rk = torch.arange(lt.k) if ranks is None else torch.as_tensor(ranks, dtype=torch.long)
    uniq, req = top_requests(result, layer, chans, rk)
    c = chans.repeat_interleave(len(rk))
    r = rk.repeat(len(chans))
    keep = lt.images[c, r] >= 0
    c, r = c[keep], r[keep]
    x = load_images(uniq.tolist())
    if not isinstance(x, torch.Tensor) or x.shape[0] != len(uniq):
        raise MiningError(
            f"load_images returned {getattr(x, 'shape', type(x).__name__)} for "
            f"{len(uniq)} indices: it must return one normalised image per index"
        )
    proj = project(
        model, x, layer, req, rule=rule, method=method, batch_size=batch_size, progress=progress
    )
    return TopProjections(
        layer,
        rule,
        c,
        r,
        lt.images[c, r],
        lt.ys[c, r],
        lt.xs[c, r],
        lt.labels[c, r],
        proj.pixels,
        proj.activation,
    )


# ---------------------------------------------------------------------------------------------
# Fig. 2's panels: strongest activations -> projections -> crops to the receptive field
# ---------------------------------------------------------------------------------------------


@dataclass
class TopImages:
    """The images behind mined entries, loaded once (Fig. 2 draws and measures the top-9 of many
    maps, which share images). Row ``r`` of ``inputs`` (normalised model inputs), ``images01``
    (for display) and ``boxes`` (object boxes, ``None`` for photos) is data set image
    ``indices[r]``; :meth:`load` is the ``load_images`` of :func:`project_top`."""

    indices: list
    inputs: torch.Tensor
    images01: torch.Tensor
    boxes: "torch.Tensor | None" = None

    def rows(self, indices) -> torch.Tensor:
        """The rows of data set images ``indices`` (each must have been loaded)."""
        where = {int(i): r for r, i in enumerate(self.indices)}
        missing = [int(i) for i in indices if int(i) not in where]
        if missing:
            raise MiningError(
                f"images {missing[:5]} were not loaded: pass their maps to load_top_images"
            )
        return torch.tensor([where[int(i)] for i in indices], dtype=torch.long)

    def load(self, indices) -> torch.Tensor:
        """Normalised model inputs of data set images ``indices``."""
        return self.inputs[self.rows(indices)]

    def display(self, indices) -> torch.Tensor:
        """Images in [0, 1] of data set images ``indices``."""
        return self.images01[self.rows(indices)]

    def boxes_of(self, indices) -> torch.Tensor:
        """Object boxes of data set images ``indices``."""
        if self.boxes is None:
            raise MiningError(
                "these images have no object boxes (photos): the box measures "
                "need a procedural profile"
            )
        return self.boxes[self.rows(indices)]


def load_top_images(dataset, profile: "str | Profile", result: TopK, *maps: dict) -> TopImages:
    """Load, once, every image among the mined top-k of the maps in ``maps`` (dicts
    ``{layer: channels}``, e.g. the maps drawn and the maps measured for Fig. 2). Procedural
    scenes come with their object boxes; a data set of photos (items ``(image, label)``) without."""
    P = get_profile(profile)
    needed = sorted(
        {
            int(i)
            for m in maps
            for layer, chans in m.items()
            for c in chans
            for i in result[layer].images[c].tolist()
            if i >= 0
        }
    )
    if hasattr(dataset, "scenes"):  # procedural scenes: images in [0, 1] and boxes
        scenes = dataset.scenes(needed)
        return TopImages(needed, normalize(scenes.images, P), scenes.images, scenes.boxes)
    inputs = torch.stack([dataset[i][0] for i in needed])
    return TopImages(needed, inputs, denormalize(inputs, P), None)


@dataclass
class TopPanels:
    """Fig. 2's panels of one layer: ``entries`` (the :class:`TopProjections`), cut to the
    receptive field ``field`` around each activation: ``projections`` (grey 0 where the field
    passes the image border) and the image ``patches`` under them (0.5 there). Without a field
    (a network with no single one) the whole images."""

    entries: TopProjections
    field: object
    projections: torch.Tensor
    patches: torch.Tensor

    def select(self, channel: int) -> torch.Tensor:
        """The rows of map ``channel``, strongest first."""
        return (self.entries.channels == channel).nonzero().flatten()

    def panels(self, channels: Sequence[int], class_names: "Sequence[str] | None" = None) -> list:
        """:func:`zfcore.plotting.deconv.plot_top9`'s panels for ``channels``, each labelled with
        the map and, given ``class_names``, the three commonest classes of its images."""
        out = []
        for c in channels:
            sel = self.select(c)
            labels = [int(l) for l in self.entries.labels[sel]]
            desc = ""
            if class_names:
                counts = {class_names[l]: labels.count(l) for l in set(labels)}
                desc = ", ".join(
                    f"{k} x{v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])[:3]
                )
            out.append(
                {
                    "projections": self.projections[sel],
                    "patches": self.patches[sel],
                    "label": f"map {c}: {desc}" if class_names is not None else f"map {c}",
                }
            )
        return out


def top_panels(
    model: nn.Module,
    result: TopK,
    layer: str,
    channels: Sequence[int],
    images: TopImages,
    rule: str = "deconvnet",
    *,
    crop: bool = True,
    method: str = "auto",
    progress: bool = False,
) -> TopPanels:
    """Section 4, Fig. 2: "the top 9 activations, each projected separately down to pixel space
    ... Alongside these visualizations we show the corresponding image patches". The mined
    entries of ``channels`` of ``layer`` are projected with ``rule`` (:func:`project_top`), and
    each projection and its image are cut to the activation's receptive field
    (:func:`zfcore.receptive.crop_patches`); ``crop=False`` keeps whole images (a residual
    network has no single field)."""
    tp = project_top(
        model,
        result,
        layer,
        images.load,
        channels=channels,
        rule=rule,
        method=method,
        progress=progress,
    )
    shown = images.display(tp.images)
    if not crop:
        return TopPanels(tp, None, tp.pixels, shown)
    rf = receptive_field(model, layer)
    return TopPanels(
        tp,
        rf,
        crop_patches(tp.pixels, rf, tp.ys, tp.xs, fill=0.0),
        crop_patches(shown, rf, tp.ys, tp.xs, fill=0.5),
    )


@torch.no_grad()
def strongest_activation(model: nn.Module, x: torch.Tensor, layer: str) -> tuple[int, int, int]:
    """``(map, y, x)`` of the strongest activation of ``layer`` for one image ``x`` (1, C, H, W):
    the feature map with the largest maximum and the position of that maximum (section 2.1's
    "pick one activation"; first in raster order on ties)."""
    a = next(iter(layer_activations(model, x, [layer]).values()))[0]
    fmap = int(a.flatten(1).max(1).values.argmax())
    y, xx = divmod(int(a[fmap].argmax()), a.shape[-1])
    return fmap, y, xx
